"""The result cache: an item whose inputs are unchanged since it reproduced is not run again."""
