/* Placeholder until hvp user lands. */
int hvp_user_placeholder_(void);
int hvp_user_placeholder_(void) { return 0; }
