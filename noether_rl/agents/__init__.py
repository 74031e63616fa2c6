"""noether_rl.agents"""
