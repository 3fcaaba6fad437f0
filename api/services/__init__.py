"""What the endpoints compute: a user's recommendations (``recommendations``), live users'
events and re-scored lists (``live``), and title search (``search``)."""
