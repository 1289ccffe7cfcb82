"""Performance analytics: hardware sampled during training, comparable figures per run, techniques
and machines compared, project and toolkit reports (issue 15)."""
