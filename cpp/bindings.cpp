// The Python face of the core (fastattr._core): argument conversions and error mapping only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "errors.hpp"
#include "kernels.hpp"
#include "search.hpp"
#include "writer.hpp"

namespace py = pybind11;
using namespace fastattr;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

// The one place where core error kinds become Python classes (fastattr.errors). The switch names
// every kind and has no default, so a new kind draws a -Wswitch warning instead of a wrong class.
py::object python_class(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::format:
            return py::module_::import("fastattr.errors").attr("IndexFormatError");
        case ErrorKind::query:
            return py::module_::import("fastattr.errors").attr("IndexQueryError");
        case ErrorKind::io:
            return py::reinterpret_borrow<py::object>(PyExc_OSError);
    }
    return py::reinterpret_borrow<py::object>(PyExc_RuntimeError);  // unreachable: every kind is listed
}

// Only what turning arrays into pointers needs is checked here (their rank); the core checks the
// rest, so a direct caller of fastattr._core gets the same refusals as fastattr.index.
py::tuple search(const Index& self, FloatArray queries, int64_t k, IdArray exclude, int64_t rerank, int64_t threads) {
    if (queries.ndim() != 2)
        fail(ErrorKind::query, "queries must be a 2-D array (n_queries, dim), got " + std::to_string(queries.ndim()) + " dimensions.");
    if (exclude.ndim() != 1) fail(ErrorKind::query, "exclude must be a 1-D array of item ids.");
    SearchRequest request;
    request.queries = queries.data();
    request.n_queries = static_cast<size_t>(queries.shape(0));
    request.query_dim = static_cast<uint64_t>(queries.shape(1));
    request.k = k;
    request.exclude = exclude.data();
    request.n_exclude = static_cast<size_t>(exclude.shape(0));
    request.rerank = rerank;
    request.threads = threads;
    SearchPlan plan;
    {
        py::gil_scoped_release unlocked;  // planning reads every query value and exclusion id
        plan = self.plan(request);
    }
    // Allocated only once the core accepted k, so a huge k is refused rather than allocated.
    py::array_t<uint64_t> ids({request.n_queries, plan.k});
    py::array_t<float> scores({request.n_queries, plan.k});
    uint64_t* out_ids = ids.mutable_data();
    float* out_scores = scores.mutable_data();
    {
        py::gil_scoped_release unlocked;  // other Python threads keep running during the scan
        self.search(plan, out_ids, out_scores);
    }
    return py::make_tuple(ids, scores);
}

void append(Writer& self, FloatArray vectors, IdArray ids) {
    if (vectors.ndim() != 2)
        fail(ErrorKind::format, "vectors must be a 2-D array (n, dim), got " + std::to_string(vectors.ndim()) + " dimensions.");
    if (ids.ndim() != 1) fail(ErrorKind::format, "ids must be a 1-D array of item ids.");
    const float* v = vectors.data();
    const uint64_t* i = ids.data();
    const auto n_rows = static_cast<uint64_t>(vectors.shape(0)), row_dim = static_cast<uint64_t>(vectors.shape(1));
    const auto n_ids = static_cast<uint64_t>(ids.shape(0));
    py::gil_scoped_release unlocked;
    self.append(v, n_rows, row_dim, i, n_ids);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastattr's native core: a memory-mapped int8 index (use fastattr.index, not this module).";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& error) {
            PyErr_SetString(python_class(error.kind()).ptr(), error.what());
        }
    });

    m.def("kernel", [] { return std::string(active_kernel().name); }, "Name of the scan kernel this process uses.");
    m.def("available_cpus", &available_cpus, "CPUs this process may run on.");
    m.def(
        "read_bandwidth",
        [](py::buffer buffer, int threads, int repeats) {
            py::buffer_info info = buffer.request();
            const auto* data = static_cast<const uint8_t*>(info.ptr);
            const uint64_t n_bytes = static_cast<uint64_t>(info.size * info.itemsize);
            py::gil_scoped_release unlocked;
            return read_bandwidth(data, n_bytes, threads, repeats);
        },
        py::arg("buffer"), py::arg("threads") = 0, py::arg("repeats") = 3,
        "Best bytes per second streaming the buffer with `threads` threads (0 = all CPUs).");

    py::class_<Index>(m, "Index")
        .def(py::init([](const std::string& path) {
                 py::gil_scoped_release unlocked;
                 return std::make_unique<Index>(path);
             }),
             py::arg("path"))
        .def("__len__", &Index::count)
        .def_property_readonly("dim", &Index::dim)
        .def_property_readonly("path", &Index::path)
        .def_property_readonly("file_bytes", &Index::file_bytes)
        .def_property_readonly("has_rerank_vectors", &Index::has_rerank_vectors)
        .def_property_readonly("ids",
                               [](py::object self) {
                                   const Index& index = self.cast<const Index&>();
                                   // A read-only view of the mapped ids; it keeps the index (and its map) alive.
                                   py::array_t<uint64_t> view({static_cast<py::ssize_t>(index.count())}, {sizeof(uint64_t)},
                                                              index.ids(), self);
                                   py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
                                   return view;
                               })
        .def("row_of", &Index::row_of, py::arg("item_id"))
        .def("search", &search, py::arg("queries"), py::arg("k"), py::arg("exclude"), py::arg("rerank"), py::arg("threads"))
        .def(
            "warmup",
            [](const Index& self, int64_t threads) {
                py::gil_scoped_release unlocked;
                self.warmup(threads);
            },
            py::arg("threads") = 0)
        .def("verify", [](const Index& self) {
            py::gil_scoped_release unlocked;
            self.verify();
        });

    py::class_<Writer>(m, "Writer")
        .def(py::init<const std::string&, int64_t, bool>(), py::arg("path"), py::arg("dim"), py::arg("rerank_vectors"))
        .def("append", &append, py::arg("vectors"), py::arg("ids"))
        .def("finish",
             [](Writer& self) {
                 py::gil_scoped_release unlocked;
                 self.finish();
             })
        .def("abort", &Writer::abort)
        .def_property_readonly("count", &Writer::count)
        .def_property_readonly("dim", &Writer::dim);
}
