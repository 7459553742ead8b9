"""Reports for staff: reciprocity per partner, the dashboard's figures, incident delivery."""
