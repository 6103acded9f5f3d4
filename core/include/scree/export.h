/* Symbol visibility for scree's shared libraries.
 *
 * Everything is built with -fvisibility=hidden; only declarations marked
 * SCREE_API are exported. Internal functions shared between translation units
 * use the scree__ prefix and stay hidden. */
#ifndef SCREE_EXPORT_H
#define SCREE_EXPORT_H

#if defined(__GNUC__)
#define SCREE_API __attribute__((visibility("default")))
#else
#define SCREE_API
#endif

#ifdef __cplusplus
#define SCREE_EXTERN_C_BEGIN extern "C" {
#define SCREE_EXTERN_C_END }
#else
#define SCREE_EXTERN_C_BEGIN
#define SCREE_EXTERN_C_END
#endif

#endif /* SCREE_EXPORT_H */
