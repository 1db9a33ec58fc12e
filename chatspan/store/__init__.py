"""Where records live: tables, migrations, the writer and the read queries."""
