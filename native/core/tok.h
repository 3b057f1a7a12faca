/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tok: the printer token store.
 *
 * The token gives full control of the printer, so it is kept in one file,
 * TOK_FILE_NAME, inside a directory chosen by the caller (the plugin's data
 * folder); this module never picks a path itself. The file is mode 0600 and
 * is replaced atomically: a save writes a unique temporary file in the same
 * directory, fsyncs it, renames it over the token file and fsyncs the
 * directory, so a crash at any moment leaves either the old or the new file,
 * never a torn one. A load refuses a file that is a symbolic link, not a
 * regular file, owned by another user or readable/writable by group or
 * others.
 *
 * File format (text, at most TOK_MAX_FILE_BYTES bytes, every line ends with
 * "\n", lines in exactly this order):
 *
 *     tsd-token v1
 *     server <url>
 *     token <token>
 *     name <printer name>          (optional)
 *     sha256 <64 lowercase hex>    (SHA-256 of every byte before this line)
 *
 * Any deviation (wrong version, missing, repeated, unknown or out-of-order
 * lines, a bad field, a checksum mismatch, trailing bytes) is TOK_ERR_CORRUPT.
 *
 * Field rules (checked on save and on load):
 *   token:  1..TOK_MAX_TOKEN bytes of printable ASCII without spaces (0x21-0x7e)
 *   server: 1..TOK_MAX_SERVER bytes of printable ASCII without spaces, starting
 *           with "https://" or "http://" (lower case) and something after it.
 *           Whether http is acceptable is decided elsewhere; it is only stored.
 *   name:   NULL (no name line) or 0..TOK_MAX_NAME bytes of valid UTF-8
 *           without control characters (C0, DEL, C1).
 *
 * Every function takes an optional reterr buffer (may be NULL) that receives a
 * human-readable reason on failure; it is left untouched on TOK_OK. Reasons
 * never contain the token.
 *
 * The functions are safe to call from several threads and processes at once,
 * also on the same directory: every save writes its own O_EXCL temporary
 * file, saves and deletes take a flock() on the directory, and stale
 * temporary files (of killed saves) are removed only under that lock, so a
 * writer never removes another's file. The last rename wins.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_TOK_H
#define TSD_TOK_H

#include <stddef.h>

enum tok_result {
    TOK_OK = 0,
    TOK_ERR_NOT_FOUND,    /* no token file (or no directory): not linked */
    TOK_ERR_CORRUPT,      /* the file exists but is torn, edited or oversized */
    TOK_ERR_IO,           /* a system call failed; reterr says which and why */
    TOK_ERR_INVALID,      /* bad argument or record; nothing was written */
    TOK_ERR_PERMISSIONS,  /* unsafe file: symlink, not regular, wrong owner or mode */
    TOK_ERR_NOMEM,        /* allocation failed */
    TOK_RESULT_MAX
};

#define TOK_FILE_NAME "tsd-token"
/* Temporary files are TOK_TEMP_PREFIX followed by random characters. */
#define TOK_TEMP_PREFIX "tsd-token.tmp-"
#define TOK_MAX_FILE_BYTES 8192u
#define TOK_MAX_TOKEN 256u
#define TOK_MAX_SERVER 2048u
#define TOK_MAX_NAME 256u
#define TOK_MAX_DIR 4096u      /* bytes of the directory path, NUL excluded */

struct tok_record {
    char *server;  /* NUL-terminated */
    char *token;   /* (secret) NUL-terminated */
    char *name;    /* NUL-terminated, or NULL when there is none */
};

const char *tok_result_str(enum tok_result result);

/* Checks a record against the field rules above without touching any file.
 * Returns TOK_OK or TOK_ERR_INVALID. */
enum tok_result tok_record_check(const struct tok_record *record,
                                 char *reterr, size_t reterr_len);

/* Atomically replaces the token file in dir with record (which is only read).
 * dir must exist. An invalid record is TOK_ERR_INVALID and nothing is
 * written; a symbolic link or other non-regular file at the final path is
 * TOK_ERR_PERMISSIONS and is left alone. On any failure before the rename the
 * temporary file is removed and the previous token file is untouched. If only
 * the final directory fsync fails, the result is TOK_ERR_IO although the new
 * file is already in place (it may not survive a power loss). */
enum tok_result tok_save(const char *dir, const struct tok_record *record,
                         char *reterr, size_t reterr_len);

/* Reads and verifies the token file in dir. On TOK_OK, *ret_record is
 * (transfer full) and must be freed with tok_record_free(); on any other
 * result it is left untouched. */
enum tok_result tok_load(const char *dir, struct tok_record **ret_record,
                         char *reterr, size_t reterr_len);

/* Parses and verifies the bytes of a token file (the format above): what
 * tok_load() does once it has read the file, without any file system check.
 * More than TOK_MAX_FILE_BYTES is TOK_ERR_CORRUPT. On TOK_OK, *ret_record is
 * (transfer full) and must be freed with tok_record_free(); on any other
 * result it is left untouched. */
enum tok_result tok_parse(const char *buf, size_t len, struct tok_record **ret_record,
                          char *reterr, size_t reterr_len);

/* Removes the token file and any stale temporary files from dir. A missing
 * file or directory is TOK_OK. A symbolic link at the final path is removed
 * (not its target). */
enum tok_result tok_delete(const char *dir, char *reterr, size_t reterr_len);

/* Wipes every string, then frees them and the record. Accepts NULL; returns
 * NULL. Only for records returned by tok_load() or tok_parse(). */
struct tok_record *tok_record_free(struct tok_record *record);

#endif
