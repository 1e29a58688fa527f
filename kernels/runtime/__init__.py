"""What the kernels need around them, no maths:

    numba_threads.py   Numba's CPU threading layer (OpenMP), chosen before any kernel compiles
    blas_threads.py    NumPy's BLAS on one thread while the Numba CPU kernels run
    heap.py            malloc keeps freed memory (no page faults on fresh arrays)
    scratch.py         reused, aligned work arrays of the CPU kernels
    fast_exp.py        a vectorisable exp for Numba (sigmoid, softmax)
    cuda_launch.py     CUDA launch helpers (blocks, zero-copy CuPy arguments)
"""
