"""The playbook format: steps, templates, checks made when a playbook loads, the loaded catalog."""
