# ftune_proto_library(TARGET ROOT <dir> PROTOS <files relative to ROOT>...)
# Generates C++ messages and gRPC stubs with protoc + grpc_cpp_plugin into
# <build>/gen/<TARGET>/ and builds them as a static library whose users
# include e.g. "grpc/health/v1/health.grpc.pb.h". Generated code is compiled
# without our warning flags.
function(ftune_proto_library target)
  cmake_parse_arguments(ARG "" "ROOT" "PROTOS;DEPS" ${ARGN})
  set(out_dir ${CMAKE_BINARY_DIR}/gen/${target})
  file(MAKE_DIRECTORY ${out_dir})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(gen ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h
            ${out_dir}/${stem}.grpc.pb.cc ${out_dir}/${stem}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${gen}
      COMMAND protobuf::protoc
        --proto_path=${ARG_ROOT}
        --cpp_out=${out_dir}
        --grpc_out=${out_dir}
        --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
        ${ARG_ROOT}/${proto}
      DEPENDS ${ARG_ROOT}/${proto} protobuf::protoc gRPC::grpc_cpp_plugin
      COMMENT "protoc ${proto}"
      VERBATIM)
    list(APPEND srcs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.grpc.pb.cc)
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${out_dir})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${ARG_DEPS})
endfunction()
