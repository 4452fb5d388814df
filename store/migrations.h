#ifndef BS_MIGRATIONS_H
#define BS_MIGRATIONS_H
/* The SQL migrations embedded at build time from migrations/NNNN_name.sql.
 * store_migrations[i].version == i + 1; the schema version of a store is
 * PRAGMA user_version, and the newest version this binary knows is
 * store_migration_count. */
struct migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct migration store_migrations[];
extern const int store_migration_count;
#endif
