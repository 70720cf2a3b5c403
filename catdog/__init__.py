"""catdog: a command-line image classifier built on Keras convolutional networks."""

__version__ = "0.1.0"
