"""The bridge to OpenMM: create_mixed_system, transports (TorchForce, PythonForce), export, simulations."""
