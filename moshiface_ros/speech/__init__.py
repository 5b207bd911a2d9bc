"""The speech model: Mimi and Moshi's LMGen driven one 80 ms step at a time."""
