"""The model builder: data -> train -> merge -> export -> evaluate -> register."""
