"""Input limits shared by the command line and the server. Standard library only, so the serve
settings and every --help show them without importing numpy."""

MAX_PIXELS = 2048 * 2048  # largest image decoded (width x height, read from its header first)
