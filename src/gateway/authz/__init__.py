"""What a caller may see: the field gate, the exit check, the disclosure step, playback."""
