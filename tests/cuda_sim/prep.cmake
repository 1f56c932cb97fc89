# prep.cmake: makes a .cu file compilable as C++ for the CPU execution layer, keeping its lines.
#   cmake -DIN=kernels/cuda/x.cu -DOUT=build/.../x.cpp -P prep.cmake
# Two rewrites, nothing else:
#   kernel<<<grid, block, smem, stream>>>(args)  ->  CUDA_SIM_LAUNCH((kernel), grid, block, smem, stream)(args)
#   extern __shared__ T name[];                  ->  T *name = (T *)::cusim::dyn_smem;
# and a #line directive so that messages and __FILE__ name the original file.
cmake_minimum_required(VERSION 3.22)
file(READ "${IN}" src)
set(out "")
while(TRUE)
  string(FIND "${src}" "<<<" open)
  if(open EQUAL -1)
    break()
  endif()
  string(SUBSTRING "${src}" 0 ${open} head)
  math(EXPR after "${open} + 3")
  string(SUBSTRING "${src}" ${after} -1 rest)
  string(FIND "${rest}" ">>>" close)
  if(close EQUAL -1)
    message(FATAL_ERROR "${IN}: '<<<' without '>>>'")
  endif()
  string(SUBSTRING "${rest}" 0 ${close} cfg)
  math(EXPR after "${close} + 3")
  string(SUBSTRING "${rest}" ${after} -1 src)
  # the kernel expression right before <<<: a name, optionally with template arguments
  if(NOT head MATCHES "([A-Za-z_][A-Za-z0-9_:]*(<[^<>]*>)?)[ \t]*$")
    message(FATAL_ERROR "${IN}: no kernel name before '<<<'")
  endif()
  set(kernel "${CMAKE_MATCH_1}")
  string(LENGTH "${head}" hl)
  string(LENGTH "${CMAKE_MATCH_0}" ml)
  math(EXPR keep "${hl} - ${ml}")
  string(SUBSTRING "${head}" 0 ${keep} head)
  string(APPEND out "${head}CUDA_SIM_LAUNCH((${kernel}), ${cfg})")
endwhile()
string(APPEND out "${src}")
string(REGEX REPLACE
  "extern[ \t]+__shared__[ \t]+(__align__\\([0-9]+\\)[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\\[\\][ \t]*;"
  "\\2 *\\3 = (\\2 *)::cusim::dyn_smem;" out "${out}")
file(WRITE "${OUT}.tmp" "#line 1 \"${IN}\"\n${out}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
