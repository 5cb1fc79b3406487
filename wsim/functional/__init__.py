"""Functional face of wsim: real tensors through the weight-streaming schedule, and the reference trainer."""
