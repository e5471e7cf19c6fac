"""`esi report`: every artifact of a run -> one self-contained HTML page and a Markdown twin."""
