"""The camera client: streams a camera's frames to Triton and measures what it gets back.

It talks to the controller only through the files in protocol/ (never imports the controller), so it
can run on another machine that shares the data directory, or be replaced by your own client.
"""
