#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"
#include "scree/error.h"
#include "sys.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The element types known here, by type character and size; the byte order
 * character is checked separately. */
static const struct {
  char type;
  size_t size;
  scree__npy_kind kind;
  scree_dtype dtype;
} known[] = {
    {'b', 1, SCREE_NPY_BOOL, SCREE_BOOL},
    {'i', 1, SCREE_NPY_INT, SCREE_INT8},
    {'i', 2, SCREE_NPY_INT, SCREE_INT16},
    {'i', 4, SCREE_NPY_INT, SCREE_INT32},
    {'i', 8, SCREE_NPY_INT, SCREE_INT64},
    {'u', 1, SCREE_NPY_UINT, SCREE_UINT8},
    /* scree has no uint16; <u2 carries bfloat16 bits by convention. */
    {'u', 2, SCREE_NPY_UINT, SCREE_DTYPE_INVALID},
    {'f', 2, SCREE_NPY_FLOAT, SCREE_FLOAT16},
    {'f', 4, SCREE_NPY_FLOAT, SCREE_FLOAT32},
    {'f', 8, SCREE_NPY_FLOAT, SCREE_FLOAT64},
    {'V', 1, SCREE_NPY_VOID, SCREE_DTYPE_INVALID},
    {'V', 2, SCREE_NPY_VOID, SCREE_DTYPE_INVALID},
};

const char *scree__npy_descr(scree_dtype dtype) {
  switch (dtype) {
  case SCREE_BOOL: return "|b1";
  case SCREE_INT8: return "|i1";
  case SCREE_INT16: return "<i2";
  case SCREE_INT32: return "<i4";
  case SCREE_INT64: return "<i8";
  case SCREE_UINT8: return "|u1";
  case SCREE_FLOAT16: return "<f2";
  case SCREE_BFLOAT16: return "<u2";
  case SCREE_FLOAT32: return "<f4";
  case SCREE_FLOAT64: return "<f8";
  case SCREE_FLOAT8_E4M3: return "|u1";
  case SCREE_FLOAT8_E5M2: return "|u1";
  default: return NULL;
  }
}

static int set_descr(const char *s, size_t n, scree__npy *out, char *msg, size_t msg_len) {
  if (n < 3 || n > 4)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "unsupported dtype descr '%.*s'",
                       (int)(n > 16 ? 16 : n), s);
  char order = s[0], type = s[1];
  size_t size = 0;
  for (size_t i = 2; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return scree__fail(SCREE_EINVAL, msg, msg_len, "unsupported dtype descr '%.*s'", (int)n,
                         s);
    size = size * 10 + (size_t)(s[i] - '0');
  }
  if (order == '>' && size > 1)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "dtype '%.*s' is big-endian; only little-endian arrays are supported",
                       (int)n, s);
  if (order != '<' && order != '|' && order != '=' && !(order == '>' && size == 1))
    return scree__fail(SCREE_EINVAL, msg, msg_len, "dtype '%.*s' has a bad byte order '%c'",
                       (int)n, s, order);
  if (order == '|' && size > 1 && type != 'V')
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "dtype '%.*s' claims no byte order for a multi-byte type", (int)n, s);
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    if (known[i].type == type && known[i].size == size) {
      memcpy(out->descr, s, n);
      out->descr[n] = '\0';
      out->kind = known[i].kind;
      out->itemsize = size;
      out->dtype = known[i].dtype;
      return 0;
    }
  }
  return scree__fail(SCREE_EINVAL, msg, msg_len,
                     "dtype '%.*s' has no scree equivalent (supported: |b1 |i1 <i2 <i4 <i8 "
                     "|u1 <u2 <f2 <f4 <f8 |V1 |V2)",
                     (int)n, s);
}

/* A cursor over the header text. */
typedef struct hp {
  const char *s;
  size_t n;
  size_t i;
} hp;

static void skip_ws(hp *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t'))
    p->i++;
}

static int peek(hp *p) {
  return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int parse_str(hp *p, const char **start, size_t *len, char *msg, size_t msg_len) {
  int q = peek(p);
  if (q != '\'' && q != '"')
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "malformed header: expected a quoted string at byte %zu", p->i);
  size_t b = ++p->i;
  while (p->i < p->n && p->s[p->i] != q) {
    if (p->s[p->i] == '\\')
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "malformed header: escapes in strings are not supported (byte %zu)",
                         p->i);
    p->i++;
  }
  if (p->i >= p->n)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: unterminated string");
  *start = p->s + b;
  *len = p->i - b;
  p->i++;
  return 0;
}

static int parse_shape(hp *p, scree__npy *out, char *msg, size_t msg_len) {
  if (peek(p) != '(')
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "malformed header: 'shape' must be a tuple, at byte %zu", p->i);
  p->i++;
  out->ndim = 0;
  for (;;) {
    skip_ws(p);
    if (peek(p) == ')') {
      p->i++;
      return 0;
    }
    int c = peek(p);
    if (c < '0' || c > '9')
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "malformed header: expected a non-negative dimension at byte %zu",
                         p->i);
    int64_t v = 0;
    while ((c = peek(p)) >= '0' && c <= '9') {
      if (v > (INT64_MAX - (c - '0')) / 10)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "malformed header: dimension %d overflows int64", out->ndim);
      v = v * 10 + (c - '0');
      p->i++;
    }
    if (out->ndim == SCREE_NPY_MAX_DIMS)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "more than %d dimensions",
                         SCREE_NPY_MAX_DIMS);
    out->shape[out->ndim++] = v;
    skip_ws(p);
    c = peek(p);
    if (c == ',') {
      p->i++;
    } else if (c != ')') {
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "malformed header: expected ',' or ')' in shape at byte %zu", p->i);
    }
  }
}

/* Parses the dict of a header: {'descr': ..., 'fortran_order': ..., 'shape': ...}. */
static int parse_dict(const char *s, size_t n, scree__npy *out, char *msg, size_t msg_len) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch != '\n' && (ch < 0x20 || ch > 0x7e))
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "malformed header: byte %zu is not printable ASCII (0x%02x)", i, ch);
  }
  if (n == 0 || s[n - 1] != '\n')
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "malformed header: it does not end with a newline");
  hp p = {s, n - 1, 0};
  int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
  skip_ws(&p);
  if (peek(&p) != '{')
    return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: it is not a dict");
  p.i++;
  for (;;) {
    skip_ws(&p);
    if (peek(&p) == '}') {
      p.i++;
      break;
    }
    const char *key;
    size_t klen;
    int rc = parse_str(&p, &key, &klen, msg, msg_len);
    if (rc != 0)
      return rc;
    skip_ws(&p);
    if (peek(&p) != ':')
      return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: expected ':' at byte %zu",
                         p.i);
    p.i++;
    skip_ws(&p);
    if (klen == 5 && memcmp(key, "descr", 5) == 0) {
      if (have_descr)
        return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: 'descr' twice");
      if (peek(&p) == '[')
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "structured dtypes are not supported (descr is a list)");
      const char *d;
      size_t dlen;
      rc = parse_str(&p, &d, &dlen, msg, msg_len);
      if (rc == 0)
        rc = set_descr(d, dlen, out, msg, msg_len);
      if (rc != 0)
        return rc;
      have_descr = 1;
    } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
      if (have_fortran)
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "malformed header: 'fortran_order' twice");
      if (p.n - p.i >= 4 && memcmp(p.s + p.i, "True", 4) == 0) {
        fortran = 1;
        p.i += 4;
      } else if (p.n - p.i >= 5 && memcmp(p.s + p.i, "False", 5) == 0) {
        p.i += 5;
      } else {
        return scree__fail(SCREE_EINVAL, msg, msg_len,
                           "malformed header: 'fortran_order' must be True or False");
      }
      have_fortran = 1;
    } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
      if (have_shape)
        return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: 'shape' twice");
      rc = parse_shape(&p, out, msg, msg_len);
      if (rc != 0)
        return rc;
      have_shape = 1;
    } else {
      return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: unknown key '%.*s'",
                         (int)(klen > 32 ? 32 : klen), key);
    }
    skip_ws(&p);
    if (peek(&p) == ',') {
      p.i++;
      continue;
    }
    if (peek(&p) == '}') {
      p.i++;
      break;
    }
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "malformed header: expected ',' or '}' at byte %zu", p.i);
  }
  skip_ws(&p);
  if (p.i != p.n)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "malformed header: unexpected text after the dict at byte %zu", p.i);
  if (!have_descr || !have_fortran || !have_shape)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "malformed header: missing key '%s'",
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
  if (fortran) {
    int nontrivial = 0;
    for (int i = 0; i < out->ndim; i++)
      nontrivial += out->shape[i] > 1;
    if (nontrivial > 1)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "Fortran-order arrays are not supported (save with "
                         "numpy.ascontiguousarray)");
  }
  return 0;
}

/* Parses the preamble and header of a file image prefix. Stores where the
 * data starts and how many bytes it has. */
static int parse_header(const unsigned char *b, size_t len, scree__npy *out,
                        size_t *data_off, char *msg, size_t msg_len) {
  memset(out, 0, sizeof(*out));
  if (len < 10 || memcmp(b, magic, sizeof(magic)) != 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "not a .npy file (bad magic)");
  unsigned major = b[6], minor = b[7];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "truncated .npy preamble");
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    hstart = 12;
  } else {
    return scree__fail(SCREE_EINVAL, msg, msg_len, "unsupported .npy format version %u.%u",
                       major, minor);
  }
  if (minor != 0)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "unsupported .npy format version %u.%u",
                       major, minor);
  if (hlen > len - hstart)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "truncated header: it claims %zu bytes, the file has %zu", hlen,
                       len - hstart);
  int rc = parse_dict((const char *)b + hstart, hlen, out, msg, msg_len);
  if (rc != 0)
    return rc;
  uint64_t bytes = out->itemsize;
  for (int i = 0; i < out->ndim; i++) {
    uint64_t d = (uint64_t)out->shape[i];
    if (d != 0 && bytes > (uint64_t)INT64_MAX / d)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "array size overflows at dimension %d", i);
    bytes *= d;
  }
  if (bytes > SIZE_MAX)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "array of %" PRIu64 " bytes is too large",
                       bytes);
  out->nbytes = (size_t)bytes;
  *data_off = hstart + hlen;
  return 0;
}

static int check_data_len(const scree__npy *a, uint64_t have, char *msg, size_t msg_len) {
  if (have < a->nbytes)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "truncated data: the header says %zu bytes, the file has %" PRIu64,
                       a->nbytes, have);
  if (have > a->nbytes)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "%" PRIu64 " bytes of trailing data after the array",
                       have - (uint64_t)a->nbytes);
  return 0;
}

int scree__npy_parse(const void *buf, size_t len, scree__npy *out, char *msg,
                     size_t msg_len) {
  size_t off = 0;
  int rc = parse_header(buf, len, out, &off, msg, msg_len);
  if (rc != 0)
    return rc;
  rc = check_data_len(out, len - off, msg, msg_len);
  if (rc != 0)
    return rc;
  out->data = malloc(out->nbytes ? out->nbytes : 1);
  if (out->data == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory for %zu bytes", out->nbytes);
  if (out->nbytes > 0)
    memcpy(out->data, (const unsigned char *)buf + off, out->nbytes);
  return 0;
}

static int read_full(int fd, void *buf, size_t n, size_t *got) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, (unsigned char *)buf + done, n - done);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0)
      break;
    done += (size_t)r;
  }
  *got = done;
  return 0;
}

int scree__npy_read(const char *path, scree__npy *out, char *msg, size_t msg_len) {
  memset(out, 0, sizeof(*out));
  int rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
    goto err_close;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = scree__fail(SCREE_EINVAL, msg, msg_len, "%s: not a regular file", path);
    goto err_close;
  }
  /* The header of versions 2 and 3 may be up to 4 GiB long in theory; no
   * real one is longer than a few KiB, so 1 MiB bounds the read. */
  size_t want = (size_t)st.st_size < (1u << 20) ? (size_t)st.st_size : (1u << 20);
  unsigned char *head = malloc(want ? want : 1);
  if (head == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory");
    goto err_close;
  }
  size_t got;
  if (read_full(fd, head, want, &got) != 0) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
    goto err_head;
  }
  size_t off = 0;
  char m[256];
  rc = parse_header(head, got, out, &off, m, sizeof(m));
  if (rc != 0) {
    scree__fail(rc, msg, msg_len, "%s: %s", path, m);
    goto err_head;
  }
  rc = check_data_len(out, (uint64_t)st.st_size - off, m, sizeof(m));
  if (rc != 0) {
    scree__fail(rc, msg, msg_len, "%s: %s", path, m);
    goto err_head;
  }
  out->data = malloc(out->nbytes ? out->nbytes : 1);
  if (out->data == NULL) {
    rc = scree__fail(SCREE_ENOMEM, msg, msg_len, "%s: out of memory for %zu bytes", path,
                     out->nbytes);
    goto err_head;
  }
  /* Part of the data may already be in the head buffer. */
  size_t inhead = got > off ? got - off : 0;
  if (inhead > out->nbytes)
    inhead = out->nbytes;
  memcpy(out->data, head + off, inhead);
  if (out->nbytes > inhead) {
    if (lseek(fd, (off_t)(off + inhead), SEEK_SET) < 0 ||
        read_full(fd, (unsigned char *)out->data + inhead, out->nbytes - inhead, &got) != 0) {
      rc = scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
      goto err_data;
    }
    if (got != out->nbytes - inhead) {
      rc = scree__fail(SCREE_EIO, msg, msg_len, "%s: the file shrank while being read", path);
      goto err_data;
    }
  }
  free(head);
  close(fd);
  return 0;

err_data:
  free(out->data);
  out->data = NULL;
err_head:
  free(head);
err_close:
  close(fd);
  return rc;
}

void scree__npy_free(scree__npy *a) {
  if (a == NULL)
    return;
  free(a->data);
  a->data = NULL;
}

int scree__npy_resolve_dtype(const scree__npy *a, scree_dtype want, scree_dtype *out,
                             char *msg, size_t msg_len) {
  if (want == SCREE_DTYPE_INVALID) {
    if (a->dtype == SCREE_DTYPE_INVALID)
      return scree__fail(SCREE_EINVAL, msg, msg_len,
                         "dtype '%s' needs an explicit element type (such as --dtype %s)",
                         a->descr, a->itemsize == 2 ? "bfloat16" : "float8_e4m3");
    *out = a->dtype;
    return 0;
  }
  if (!scree_dtype_valid((int)want))
    return scree__fail(SCREE_EINVAL, msg, msg_len, "invalid dtype %d", (int)want);
  if (scree_dtype_size(want) != a->itemsize)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "%s has %zu-byte elements but the file's '%s' has %zu",
                       scree_dtype_name(want), scree_dtype_size(want), a->descr, a->itemsize);
  int ok;
  if (a->kind == SCREE_NPY_VOID)
    ok = 1;
  else if (a->kind == SCREE_NPY_UINT && a->itemsize == 2)
    ok = want == SCREE_BFLOAT16 || want == SCREE_FLOAT16;
  else if (a->kind == SCREE_NPY_UINT && a->itemsize == 1)
    ok = want == SCREE_UINT8 || want == SCREE_INT8 || want == SCREE_BOOL ||
         want == SCREE_FLOAT8_E4M3 || want == SCREE_FLOAT8_E5M2;
  else
    ok = want == a->dtype;
  if (!ok)
    return scree__fail(SCREE_EINVAL, msg, msg_len,
                       "the file holds '%s' (%s), which cannot be read as %s", a->descr,
                       scree_dtype_name(a->dtype), scree_dtype_name(want));
  *out = want;
  return 0;
}

#define SCREE__NPY_HDR_MAX (128 + SCREE_NPY_MAX_DIMS * 24)

typedef struct {
  unsigned char b[SCREE__NPY_HDR_MAX];
  size_t len;          /* of the preamble and header, in b */
  uint64_t data_bytes; /* that follow it */
} npy_header;

/* Builds the preamble and header for an array into h, with their length
 * and the number of data bytes, and refuses a NULL data pointer for an
 * array that has any: both writers (to memory and to a file) need exactly
 * these checks first. */
static int build_header(scree_dtype dtype, int ndim, const int64_t *shape, const void *data,
                        npy_header *h, char *msg, size_t msg_len) {
  unsigned char *hdr = h->b;
  const char *descr = scree__npy_descr(dtype);
  if (descr == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "invalid dtype %d", (int)dtype);
  if (ndim < 0 || ndim > SCREE_NPY_MAX_DIMS)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "%d dimensions; at most %d", ndim,
                       SCREE_NPY_MAX_DIMS);
  char dict[64 + SCREE_NPY_MAX_DIMS * 24];
  int n = snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   descr);
  uint64_t bytes = scree_dtype_size(dtype);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return scree__fail(SCREE_EINVAL, msg, msg_len, "shape[%d]=%" PRId64 " is negative", i,
                         shape[i]);
    if (shape[i] != 0 && bytes > (uint64_t)INT64_MAX / (uint64_t)shape[i])
      return scree__fail(SCREE_EINVAL, msg, msg_len, "array size overflows at dimension %d", i);
    bytes *= (uint64_t)shape[i];
    n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s%" PRId64, i ? ", " : "", shape[i]);
  }
  n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s), }", ndim == 1 ? "," : "");
  if (bytes > SIZE_MAX - 4096)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "array too large");

  /* numpy pads the header with spaces and a newline so that the data starts
   * on a 64-byte boundary. Headers this short always fit version 1.0. */
  size_t pre = 10;
  size_t total = (pre + (size_t)n + 1 + 63) / 64 * 64;
  size_t hlen = total - pre;
  memcpy(hdr, magic, sizeof(magic));
  hdr[6] = 1;
  hdr[7] = 0;
  hdr[8] = (unsigned char)(hlen & 0xff);
  hdr[9] = (unsigned char)((hlen >> 8) & 0xff);
  memcpy(hdr + pre, dict, (size_t)n);
  memset(hdr + pre + n, ' ', hlen - (size_t)n - 1);
  hdr[total - 1] = '\n';
  h->len = total;
  h->data_bytes = bytes;
  if (bytes > 0 && data == NULL)
    return scree__fail(SCREE_EINVAL, msg, msg_len, "data is NULL");
  return 0;
}

int scree__npy_encode(scree_dtype dtype, int ndim, const int64_t *shape, const void *data,
                      void **out, size_t *out_len, char *msg, size_t msg_len) {
  npy_header h;
  int rc = build_header(dtype, ndim, shape, data, &h, msg, msg_len);
  if (rc != 0)
    return rc;
  size_t hlen = h.len;
  uint64_t bytes = h.data_bytes;
  unsigned char *buf = malloc(hlen + (size_t)bytes);
  if (buf == NULL)
    return scree__fail(SCREE_ENOMEM, msg, msg_len, "out of memory for %" PRIu64 " bytes",
                       (uint64_t)hlen + bytes);
  memcpy(buf, h.b, hlen);
  if (bytes > 0)
    memcpy(buf + hlen, data, (size_t)bytes);
  *out = buf;
  *out_len = hlen + (size_t)bytes;
  return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, (const unsigned char *)buf + done, len - done);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += (size_t)w;
  }
  return 0;
}

int scree__npy_write(const char *path, scree_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, char *msg, size_t msg_len) {
  npy_header h;
  int rc = build_header(dtype, ndim, shape, data, &h, msg, msg_len);
  if (rc != 0)
    return rc;
  /* Written straight from the caller's buffer: for a get, that is the
   * daemon's memory, so no copy of the batch is made here. */
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
  if (write_full(fd, h.b, h.len) != 0 || write_full(fd, data, (size_t)h.data_bytes) != 0) {
    rc = scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
    close(fd);
    return rc;
  }
  if (close(fd) != 0)
    return scree__fail(SCREE_EIO, msg, msg_len, "%s: %s", path, strerror(errno));
  return 0;
}
