"""A ResBlock's forward under no_grad on the CPU: conv -> GroupNorm+SiLU -> conv with the middle
activation on the conv lines (cpu.py). Its reference is the layers' operations in turn
(ops.resblock_forward); on image lanes the whole block runs in lanes.py.
"""
