"""noether_rl.experiments"""
