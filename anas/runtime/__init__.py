"""What every stage of the pipeline may use at run time: devices, the processes of a
``torchrun`` job, run folders and their checkpoints."""
