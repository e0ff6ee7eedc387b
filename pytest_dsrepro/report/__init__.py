"""What a run reports: the summary, the JSON document, the HTML page, Markdown."""
