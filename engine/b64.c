/* b64.c - placeholder while the module is written. */
