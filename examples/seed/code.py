# The example from the original LivePandas README, as written there (typo included:
# calling /subtract reports "NameError: name 'substract' is not defined").

# Published as 'addition'
def livepandas_addition(x, y):
    return x + y

# Not published.
def subtract(x, y):
    return x - y

# Published as 'subtract'
def livepandas_subtract(x, y):
    return substract(x, y)
