"""What a recipient may receive: access, visibility in SQL, the second gate, preview, and the one outbound pipeline."""
