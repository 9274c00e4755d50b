"""What the controller and the camera clients share, and nothing else: the files under the data
directory through which they talk (directives, spooled chunks, results), the model input format and
the defaults both read from a deployment config. Neither side's code is imported here."""
