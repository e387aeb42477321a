/*
 * dkimctl.h - subcommands of dkimctl and the helpers they share.
 */
#ifndef DKIMCTL_H
#define DKIMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses shared by every subcommand. */
enum {
    DKIMCTL_OK = 0,      /* done (whatever the DKIM results) */
    DKIMCTL_FAILED = 1,  /* some input could not be processed */
    DKIMCTL_USAGE = 2,   /* bad command line */
};

int dkimctl_verify(int argc, char **argv);
int dkimctl_keygen(int argc, char **argv);
int dkimctl_sign(int argc, char **argv);
int dkimctl_check_record(int argc, char **argv);
int dkimctl_explain(int argc, char **argv);
int dkimctl_stats(int argc, char **argv);

/* read_file reads a whole file into a malloc'd buffer. NULL (errno set) on failure. */
uint8_t *read_file(const char *path, size_t *len);

/* dkimctl_read_stdin reads all of standard input like read_file. */
uint8_t *dkimctl_read_stdin(size_t *len);

/* dkimctl_parse_uint parses a decimal number (digits only) no greater than max. */
bool dkimctl_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

/* dkimctl_name_valid checks a domain or selector given on the command line: labels of
 * letters, digits, '-' and '_', separated by single dots, at most 253 bytes. */
bool dkimctl_name_valid(const char *s);

/* json_string writes s (n bytes) as a JSON string. Invalid UTF-8 bytes are written as
 * \u00XX (their Latin-1 reading) so the output is always valid JSON. */
void json_string(FILE *out, const char *s, size_t n);
void json_cstring(FILE *out, const char *s);

#endif
