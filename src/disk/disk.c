/* Placeholder until the disk library lands. */
int hvp_disk_placeholder_(void);
int hvp_disk_placeholder_(void) { return 0; }
