"""One stream's supervisor process: the restart loop, one ffmpeg session at a time, the budget."""
