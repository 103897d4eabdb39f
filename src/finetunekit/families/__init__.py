"""Model families: the task-specific data, loss and model code for one kind of model."""
