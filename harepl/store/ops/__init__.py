"""The store's operations, one module per domain.

Each module declares its ops (`harepl.store.envelope.Op`: name, the version it appeared
in, its fields each with their own version) next to the handler `apply` runs for them,
and the constructors callers build commands with.  A module's ``OPS`` lists its
declarations; `harepl.store.vocabulary.REGISTRY` is built from those lists, explicitly:
importing a module registers nothing.

- `leases`       lease_acquire, lease_renew, lease_release
- `status`       manager_status_set, lrm_status_set
- `crm`          crm_command_enqueue, crm_command_consume
- `resources`    resource_add, resource_set, resource_update, resource_move, resource_remove
- `groups_rules` group_set, group_update, group_remove, rule_set, rule_update, rule_remove
- `datacenter`   dc_options_set
- `nodes`        node_add, node_remove, node_stats_set
- (`harepl.store.vocabulary`: noop, the barrier of linearizable reads)

`common` holds what the handlers share: `Rejected`, fencing, digests.
"""
