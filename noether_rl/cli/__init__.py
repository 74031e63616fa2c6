"""noether_rl.cli"""
