"""The demo realm: synthetic government datasets and the demo upstream data APIs."""
