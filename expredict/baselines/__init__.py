"""Baselines that expredict is compared against: PrediXcan-style elastic net and Enformer."""
