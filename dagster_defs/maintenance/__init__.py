"""Instance maintenance: the ``binlake_maintenance`` job and its schedule (see ``jobs``)."""
