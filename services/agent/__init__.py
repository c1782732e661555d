"""The human agent's side of a handoff: the queue, claiming a conversation, replying,
handing back and resolving (desk.py), served as the AgentDesk gRPC service in the Dialog
process (servicer.py), and the ``kefu agent`` commands (cli.py)."""
