"""Demo-city data: the committed upstream extract and the generator built on it."""
