"""Returns, exchanges and refunds as sagas: ReturnWorkflow follows a return or an exchange
from the authorisation to the refund or the replacement, and a cancellation's refund until
it is paid, over days, driven by ERP events."""
