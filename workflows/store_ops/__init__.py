"""Store operations: Dialog starts StoreOperationWorkflow for each change the customer
confirmed; its activity applies it through the ERP port, idempotent on the workflow id."""
