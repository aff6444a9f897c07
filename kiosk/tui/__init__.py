"""The officer's terminal app (Textual): officer, tester and technician screens."""
