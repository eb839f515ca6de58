/* Placeholder until the instruction emulator lands. */
int hvp_emulator_placeholder_(void);
int hvp_emulator_placeholder_(void) { return 0; }
