"""Web pages for analysts and administrators under /ui/ (server-rendered, English and Bangla)."""
