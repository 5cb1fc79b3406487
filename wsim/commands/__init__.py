"""One module per ``wsim`` sub-command; shared argument helpers live in ``wsim.commands.common``."""
