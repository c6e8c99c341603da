#pragma once
// Small owners for libvirt connections and the XML libvirt returns (libxml2 XPath).

#include <libvirt/libvirt.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

struct LibvirtConnCloser {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using LibvirtConn = std::unique_ptr<virConnect, LibvirtConnCloser>;

// Opens `uri` read-only where possible; libvirt's default "print every error to stderr" handler
// is replaced: errors come back as Status values carrying libvirt's message.
absl::StatusOr<LibvirtConn> OpenLibvirt(const std::string& uri);
// "what: <libvirt's last error message>".
absl::Status LibvirtError(const std::string& what);
// Takes ownership of a malloc'ed string libvirt returned (nullptr -> error).
absl::StatusOr<std::string> TakeLibvirtString(char* s, const std::string& what);

class XmlDoc {
 public:
  static absl::StatusOr<XmlDoc> Parse(const std::string& xml, const std::string& what);
  // Text of every node matching `xpath` (attributes or elements).
  std::vector<std::string> All(const char* xpath) const;
  // First match, or "".
  std::string First(const char* xpath) const;
  bool Has(const char* xpath) const { return !All(xpath).empty(); }

 private:
  struct Free {
    void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
  };
  std::unique_ptr<xmlDoc, Free> doc_;
};

}  // namespace ferry
