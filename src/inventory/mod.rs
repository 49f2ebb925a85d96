//! Ansible-compatible YAML inventory (owned by the inventory work; see issue 2).
