"""The chat services: accepting messages, the 1:1 and group routers, delivery to nodes, notices and replay."""
