/* Placeholder until the CPU core lands. */
int hvp_cpu_placeholder_(void);
int hvp_cpu_placeholder_(void) { return 0; }
