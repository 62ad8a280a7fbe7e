"""A finished run's model to take away: weights, preprocessing, prediction on image files."""
