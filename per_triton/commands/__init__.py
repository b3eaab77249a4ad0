"""Subcommands of the per-triton console command."""
